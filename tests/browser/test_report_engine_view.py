"""The Report card page's choice of where to compute, in a real Chromium: the Ray address field
appears when a Ray cluster is chosen, and says what it accepts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_choosing_a_ray_cluster_shows_the_address_field(app):
    app.open_page("Report card")
    main = app.main()
    assert main.get_by_role("textbox", name="Ray address").count() == 0
    main.get_by_text("Where to compute", exact=True).click()
    app.wait_idle()
    main.get_by_text("A Ray cluster", exact=True).click()
    app.wait_idle()
    field = main.get_by_role("textbox", name="Ray address")
    assert field.is_visible() and field.get_attribute("placeholder") == "auto, HOST:PORT or ray://HOST:10001"
    field.fill("127.0.0.1:6379")
    field.press("Enter")
    app.wait_idle()
    assert main.get_by_role("textbox", name="Ray address").input_value() == "127.0.0.1:6379"
    app.screenshot("report-card-ray-address")
    assert app.exception_boxes() == [] and app.errors() == []

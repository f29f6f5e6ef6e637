"""Clinician review: a list of cases to step through (:mod:`~xaicore.review.cases`), verdicts on
their maps kept in a local SQLite database (:mod:`~xaicore.review.verdicts`), and a report of
what was seen and decided (:mod:`~xaicore.review.report`)."""

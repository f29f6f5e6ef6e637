"""The Clever-Hans lab: a model that cheats on a stamp, found with heatmaps, corrected, checked.

* :mod:`~xaicore.clever_hans.training`: train the cheating model on stamped shapes;
* :mod:`~xaicore.clever_hans.model`: load the shipped one as a bundle;
* :mod:`~xaicore.clever_hans.measures`: the test sets and the figures (accuracies, flip rate,
  false-class rate, relevance mass in the stamp's box);
* :mod:`~xaicore.clever_hans.pclarc`, :mod:`~xaicore.clever_hans.aclarc`,
  :mod:`~xaicore.clever_hans.rrr`: three corrections, each on a private copy;
* :mod:`~xaicore.clever_hans.verify`: the table of the original and corrected models, with the
  survey's warning, and its JSON record.
"""

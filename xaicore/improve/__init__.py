"""Explanations that improve models: the hard shapes data set, its small frozen classifier and
IG soft-masking (:mod:`xaicore.improve.softmask`)."""

"""The labelling loop: from unlabelled recordings to a data set, and from a wrong answer to a better model.

- :mod:`~audioclf.labelling.segmenting`: cut long recordings into clips (fixed windows or sound events).
- :mod:`~audioclf.labelling.grouping`: embed clips with pretrained features and group them.
- :mod:`~audioclf.labelling.naming`: suggested group names from AudioSet tags.
- :mod:`~audioclf.labelling.session`: a labelling session on disk (name, merge, split, discard,
  move, save as a data set, the next most useful clips to label).
- :mod:`~audioclf.labelling.corrections`: "wrong? this is ..." and the retrain that learns from it.
- :mod:`~audioclf.labelling.synth`: a long demo recording with known events.

Submodules are imported on use; importing this package loads nothing heavy.
"""

"""audioclf: classify sounds without writing code.

The library is plain Python (no Streamlit): audio I/O (`audioclf.audio`),
features (`audioclf.features`), data sets (`audioclf.datasets`), models and
training (`audioclf.models`, `audioclf.training`), evaluation, run storage,
prediction and plotting. TensorFlow is imported only where a model is needed.
"""

__version__ = "0.1.0"

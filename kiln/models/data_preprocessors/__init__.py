"""Model-side batch preprocessing of the MMDetection 3.x batch form (``inputs`` + ``data_samples``)."""

from .det_data_preprocessor import BatchFixedSizePad, DetDataPreprocessor

__all__ = ["BatchFixedSizePad", "DetDataPreprocessor"]

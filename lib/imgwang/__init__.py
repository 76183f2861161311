"""imgwang: self-supervised pretraining on unlabelled images, transfer, honest evaluation."""

__version__ = "0.1.0"

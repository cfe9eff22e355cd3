"""ladet: Label Assignment Distillation (LAD, SoLAD, CoLAD) and the PAA detector on torch + torchvision."""

__version__ = "0.1.0"

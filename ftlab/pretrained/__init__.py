"""Pretrained initialisation: param surgery and the source-task pretraining stage."""

"""Training: SageMaker channels -> packed RecordIO -> ResNet fine-tuning -> the built-in's model files."""

"""Training: SageMaker channels -> RecordIO -> ResNet fine-tuning -> the built-in's model."""

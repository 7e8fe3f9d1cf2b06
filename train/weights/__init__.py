"""ImageNet weight sets: where they are published (catalog), how they are fetched and verified
(fetch), read without PyTorch (readers) and renamed to GluonCV's layout (convert)."""

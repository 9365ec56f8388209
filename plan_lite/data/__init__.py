"""Data: synthetic generator, dataset I/O, validation, preprocessing, augmentation."""

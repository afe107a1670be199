"""Data layer: annotation readers, feature store, vocabulary, dataset and collate."""

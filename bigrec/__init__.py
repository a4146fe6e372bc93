"""bigrec: recommender models on sharded TorchRec embedding tables."""

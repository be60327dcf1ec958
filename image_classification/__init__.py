"""CIFAR-10 image classification task of the T-RecX pipeline."""

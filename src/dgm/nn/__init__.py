"""Layers shared by several model families: masked linear and convolutional layers, MADE degrees."""

"""neuralprior"""

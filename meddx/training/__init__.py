"""Training on PyTorch Lightning: `fit.fit(config) -> Run`, the data module, the Classifier, callbacks, k-fold CV and
MLM pretraining. `meddx.train(config)` trains and evaluates.

Import the modules themselves; this package imports nothing eagerly (so `training.collapse` and `training.losses`
stay free of Lightning).
"""

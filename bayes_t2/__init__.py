"""bayes-t2: Bayesian Train-to-Test scaling laws with honest intervals on N*, D*, k*."""

__version__ = "0.1.0"

"""capflow: a reproducible pipeline for explanation-guided learning with attribution priors."""

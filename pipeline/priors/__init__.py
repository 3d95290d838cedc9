"""Word-level attribution priors (CAP, LIME) and their hybrid fusion."""

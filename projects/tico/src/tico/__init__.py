"""TiCo: transformation invariance and covariance contrast (Zhu et al., 2022)."""

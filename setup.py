"""Packaging beyond what pyproject.toml can say: the Hydra configs in ``conf/`` ship inside the package
as ``spectral_tracking/conf`` (found by `spectral_tracking.cli.config_dir`), so an installed
``spectral-track`` / ``spectral-fit`` runs from any folder while the repository keeps ``conf/`` at its root."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["spectral_tracking", "spectral_tracking.*"]), "spectral_tracking.conf"],
    package_dir={"spectral_tracking.conf": "conf"},
    package_data={
        "spectral_tracking": ["render/csrc/*.cpp", "losses/csrc/*.cpp", "deform/csrc/*.cpp", "csrc/*.cpp"],
        "spectral_tracking.conf": ["*.yaml", "*/*.yaml"],
    },
)

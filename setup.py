"""megatron_nexa: pretraining toolkit for the Nexa-Spec MS/MS foundation model.

Pins are the versions this repository is tested with (CPU CI: Python 3.11). On a CUDA cluster,
install the CUDA build of torch first (see README), then this package.
"""
from setuptools import find_packages, setup

setup(
    name="megatron_nexa",
    version="0.1.0",
    description="Pretrain Nexa-Spec, an encoder-only transformer for MS/MS spectra, with megatron-core and DeepSpeed",
    python_requires=">=3.10",
    packages=find_packages(include=["megatron_nexa", "megatron_nexa.*"]),
    package_data={"megatron_nexa.convert": ["hf_templates/*.txt"]},
    install_requires=[
        "torch>=2.5,<3",  # SDPA enable_gqa needs 2.5; CPU machines: torch==2.13.0, installed first (Makefile); clusters: their CUDA build
        "deepspeed>=0.19,<0.20",
        "megatron-core>=0.16.1,<0.17",  # 0.16.1: the newest release for Python 3.11
        "numpy>=1.26",
        "pyarrow>=15",
        "pyyaml>=6",
        "wandb>=0.17",
        "tqdm>=4.66",
        "fsspec>=2024.6",
        "pyteomics>=4.7,<6",
        "lxml>=5",
        "h5py>=3.10",
        "packaging>=23",  # compat/: the version range each seam to a library's internals was written for
    ],
    extras_require={
        "hf": ["transformers>=4.45", "safetensors>=0.4", "huggingface_hub>=0.24"],
        "chem": ["rdkit>=2024.3", "matchms>=0.26"],
        # nexa-eval's practitioner baselines; spec2vec 0.9 runs on matchms 0.33 through compat.spec2vec
        "baselines": ["spec2vec>=0.9,<0.10", "gensim>=4.3,<5", "ms-entropy>=1.5,<1.6"],
        "s3": ["s3fs>=2024.6", "boto3>=1.34", "moto[server]>=5"],
        "dev": ["pytest>=8", "matplotlib>=3.8", "psutil>=5.9"],
    },
    entry_points={
        "console_scripts": [
            "nexa-plan=megatron_nexa.cli.plan:main",
            "nexa-preprocess=megatron_nexa.cli.preprocess:main",
            "nexa-dataset=megatron_nexa.cli.dataset:main",
            "nexa-convert=megatron_nexa.cli.convert:main",
            "nexa-embed=megatron_nexa.cli.embed:main",
            "nexa-eval=megatron_nexa.cli.eval:main",
            "nexa-finetune=megatron_nexa.cli.finetune:main",
            "nexa-preflight=megatron_nexa.cli.preflight:main",
        ],
    },
)

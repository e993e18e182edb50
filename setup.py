from setuptools import find_packages, setup

setup(
    name="llava_hf",
    version="0.1.0",
    description="Train, chat with, evaluate and ship LLaVA-style vision-language models, natively on transformers.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["llava_hf", "llava_hf.*"]),
    package_data={"llava_hf.demo": ["recipes/*.yaml"]},
    install_requires=[
        "torch>=2.4",
        "transformers>=5.17,<6",
        "accelerate>=1.0",
        "peft>=0.17",
        "datasets>=3.0",
        "pillow>=10.0",
        "pandas>=2.0",
        "openpyxl>=3.1",
        "safetensors>=0.4",
        "sentencepiece>=0.2",
        "protobuf>=4.0",
        "tokenizers>=0.21",
        "pyyaml>=6.0",
        "tensorboard>=2.14",
    ],
    extras_require={
        "qlora": ["bitsandbytes>=0.45"],
        "deepspeed": ["deepspeed>=0.15"],
        "web": ["gradio>=6.0"],
        # The browser test drives the web demo with Playwright in Debian's Chromium (.ci/run installs it).
        "test": ["pytest>=8.0", "gradio>=6.0", "playwright>=1.40"],
    },
    entry_points={"console_scripts": ["llava-hf=llava_hf.cli.main:main"]},
)

"""The one exception the data pipeline raises for bad input, always naming the file and sample."""

from ..errors import UserInputError


class DataError(UserInputError):
    """Bad training data: the message names the data file, the sample (index and id) and what is wrong."""


def describe_sample(data_path: str, index: int, sample_id=None) -> str:
    """`file.json sample #12 (id '000000033471')`: the prefix every per-sample message starts with."""
    where = f"{data_path} sample #{index}"
    return f"{where} (id {sample_id!r})" if sample_id is not None else where


def describe_image(number: int, count: int) -> str:
    """`image 2 of 3: ` before an image problem of a multi-image sample (nothing for a sample's only image)."""
    return f"image {number} of {count}: " if count > 1 else ""

"""Imagewang facts as data: class names and the leaderboard to compare against.

Source: the fastai/imagenette README (Imagewang section). The leaderboard is top-1 accuracy (%) on val/
after fine-tuning for the given epochs from self-supervised weights, last epoch, mean of LEADERBOARD_RUNS.
"""

# val/ holds only these 10 classes; train/ holds all 20.
IMAGEWOOF_CLASSES = {
    "n02086240": "Shih-Tzu",
    "n02087394": "Rhodesian ridgeback",
    "n02088364": "beagle",
    "n02089973": "English foxhound",
    "n02093754": "Australian terrier",
    "n02096294": "Border terrier",
    "n02099601": "golden retriever",
    "n02105641": "Old English sheepdog",
    "n02111889": "Samoyed",
    "n02115641": "dingo",
}

IMAGENETTE_CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}

CLASS_NAMES = {**IMAGEWOOF_CLASSES, **IMAGENETTE_CLASSES}

# image size (px) -> fine-tune epochs -> top-1 % (SwAV, xresnet34 at the time of writing; 256 px at 80 and
# 200 epochs: SESEMI, 78.41 ± 0.39 and 79.27 ± 0.20)
LEADERBOARD = {
    128: {5: 72.94, 20: 72.18, 80: 69.53, 200: 66.04},
    192: {5: 77.07, 20: 77.81, 80: 74.9, 200: 71.77},
    256: {5: 79.56, 20: 79.2, 80: 78.41, 200: 79.27},
}
# Shortest side of the stored images of each named dataset (imagewang-full keeps the originals).
STORED_SIDE = {"sample": 72, "imagewang": 160, "imagewang-320": 320}
# fine-tune epochs -> how many runs the leaderboard averages
LEADERBOARD_RUNS = {5: 5, 20: 3, 80: 1, 200: 1}


def class_label(wnid: str) -> str:
    """'n02086240 Shih-Tzu' for a known wnid; any other folder name is returned as it is."""
    name = CLASS_NAMES.get(wnid)
    return f"{wnid} {name}" if name else wnid


def leaderboard_entry(size: int, epochs: int) -> float | None:
    """Leaderboard accuracy (%) for this size and epoch count, or None when there is no such entry."""
    return LEADERBOARD.get(size, {}).get(epochs)


def upsampling_warning(data: str, size: int, paths=()) -> str | None:
    """A warning when SIZE is above the stored side of the data: the images would be upsampled, and the
    larger leaderboard sizes (192, 256) need the larger download. Any other folder: its images' own side, read from
    a few of `paths` (imgwang.data.native_size)."""
    side = STORED_SIDE.get(data)
    if side is None:
        from .native_size import folder_upsampling_warning

        return folder_upsampling_warning(data, paths, size)
    if size <= side:
        return None
    if data == "sample":
        better = "SIZE=64 or less (the sample is generated at 72 px)"
    else:
        better = "DATA=imagewang-320" if size <= 320 else "DATA=imagewang-full"
    return f"warning: SIZE={size} is above the {side} px images of DATA={data}: they are upsampled; use {better}"

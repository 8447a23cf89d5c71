"""The dataset: the six factors and their levels (the one owner of those facts), the Shapes3D HDF5 file (validate,
load, write), the train/test split, the offline renderer and the resumable download."""

"""Data in and out, before any network: the first stage of the pipeline.

``io`` reads CT volumes and label maps (NIfTI, DICOM series, .mha/.nrrd) into one convention
(:class:`~livseg.data.io.volume.Volume`: HU array, RAS affine, spacing per array axis) and
writes masks on the input's grid; ``datasets`` finds CT/label pairs (LiTS, MSD, CSV), checks them
and splits them; ``preprocessing`` turns a CT into the network's input and maps the output back
(HU window, reorientation, resampling, and the inverse); ``cache`` stores a preprocessed dataset
and serves it as a torch Dataset; ``augmentation`` perturbs training pairs on the network grid;
``masks`` holds the boolean view and bounding box of a mask that later stages share.
Nothing here imports the other subpackages.
"""

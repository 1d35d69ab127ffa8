"""Arrays in and out for dataset plugins and evaluation: raw-file readers (h5, split lists), NIfTI
volumes with their geometry, and the slice resize SSL4MIS uses. Imports only the base layer."""

"""The transactional API (FastAPI). Records and routes money; the pipeline computes fees and statements."""

"""Operations: plain functions that take a Repo and return result objects."""

"""CSV and JSON import and export: encodings, streaming, the formula-injection guard."""

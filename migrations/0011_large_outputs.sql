-- taskrelay: outputs of any size. D1 refuses a row or string over 2,000,000 bytes, so an output
-- whose JSON is over INLINE_OUTPUT_MAX_BYTES (services/outputs.ts, 256 KiB) is stored in R2 (the
-- OUTPUTS bucket) and the run keeps only its key; `output` is then NULL. output_bytes is the size
-- of the output's JSON wherever it is stored (NULL until a result is stored).
ALTER TABLE runs ADD COLUMN output_key TEXT;
ALTER TABLE runs ADD COLUMN output_bytes INTEGER;

"""The paper's experiments, each a small module over the library with a `main(argv)` that the
`objmm` CLI calls: `pets` (the PETS loop), `datasets` (`objmm data ...`). The library modules
never import from here."""

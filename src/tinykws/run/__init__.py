"""Recipe runs: loading a recipe (`recipe`), the resumable pipeline (`pipeline`, `state`,
`lock`), the stage wrappers (`stages`) and exporting a model file in every format (`exporting`)."""

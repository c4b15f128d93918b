"""Users' programs built on the library: the `pathattr` command line (`cli`), dataset
jobs (`job`), the HTTP service (`serve`), the demo, pictures (`viz`) and reports.
`job` and `serve` share `loading` (models from the command line) and `options` (their
common flags); `extras` names the optional dependencies each app needs.
They use the public library only."""

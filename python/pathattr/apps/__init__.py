"""Users' programs built on the library: the `pathattr` command line (`cli`), dataset
jobs (`job`), the HTTP service (`serve`), the demo, pictures (`viz`) and reports.
They use the public library only."""

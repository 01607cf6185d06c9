"""`hydranet report`: one self-contained HTML page per run or tuning study, built from registered sections.

A feature adds a section with `@section(name, title, order)` from hydranet.report.context in its own
`hydranet/<feature>/report_sections.py`; run.py imports every such module.
"""

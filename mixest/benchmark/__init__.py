"""The paper's result tables as library code, behind ``mixest benchmark``.

:mod:`mixest.benchmark._table2` runs every tracker on the same windows of MOTChallenge
sequences, :mod:`mixest.benchmark._table3` every separator on the same speech + music mixtures;
:mod:`mixest.benchmark._results` writes a table as Markdown, CSV and JSON with the command and
the mixest version that produced it.
"""

"""The I/O layer under the stages: input readers (readers, lines), the publish gate
(table_checks), atomic publishing (publish) and exports (export). It imports no stage.
"""

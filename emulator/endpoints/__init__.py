"""Any fal endpoint from its published OpenAPI document: loading, inputs, generated outputs, behaviour.

Framework-free: nothing here imports Starlette; the HTTP surfaces call into it.
"""

"""indexes for lists at scale: newest messages per tenant, phone-suffix search

Revision ID: 0006_list_scale_indexes
Revises: 0005_contact_import
Create Date: 2026-11-27 17:30:00

Measured with bench/bench_contacts_scale.py (docs/benchmarks.md): the messages list's
newest-first order took 1,333 ms over 5M messages without the first index (0.08 ms with
it); a 4-9 digit phone search scans all of a tenant's contacts without the second.
The reverse() expression index is PostgreSQL-only (SQLite, the demo database, has no
reverse() and no million-row tenants).
"""


from alembic import op

revision = "0006_list_scale_indexes"
down_revision = "0005_contact_import"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.create_index("ix_message_tenant_created", ["tenant_id", "created_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_contact_tenant_wa_id_reverse "
            "ON contact (tenant_id, reverse(wa_id) text_pattern_ops)"
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_contact_tenant_wa_id_reverse")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index("ix_message_tenant_created")



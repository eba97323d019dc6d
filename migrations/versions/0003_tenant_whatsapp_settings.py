"""tenant whatsapp settings

Revision ID: 0003_whatsapp_settings
Revises: 0002_audit
Create Date: 2026-11-27 16:22:57.082907

The WhatsApp Cloud API settings of a tenant. The two secrets are stored as Fernet
tokens (app.models.types.EncryptedText); to the database they are plain Text.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_whatsapp_settings'
down_revision = '0002_audit'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tenant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wa_phone_number_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('wa_business_account_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('wa_display_number', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('wa_messaging_limit_mps', sa.Integer(), server_default='80', nullable=False))
        # Encrypted (Fernet tokens): plain Text to the database.
        batch_op.add_column(sa.Column('wa_access_token', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('wa_app_secret', sa.Text(), nullable=True))
        batch_op.create_unique_constraint('uq_tenant_wa_phone_number_id', ['wa_phone_number_id'])
        batch_op.create_check_constraint(
            'ck_tenant_wa_messaging_limit_mps', 'wa_messaging_limit_mps BETWEEN 1 AND 1000'
        )


def downgrade():
    with op.batch_alter_table('tenant', schema=None) as batch_op:
        batch_op.drop_constraint('ck_tenant_wa_messaging_limit_mps', type_='check')
        batch_op.drop_constraint('uq_tenant_wa_phone_number_id', type_='unique')
        batch_op.drop_column('wa_app_secret')
        batch_op.drop_column('wa_access_token')
        batch_op.drop_column('wa_messaging_limit_mps')
        batch_op.drop_column('wa_display_number')
        batch_op.drop_column('wa_business_account_id')
        batch_op.drop_column('wa_phone_number_id')

# llama.cpp turns record what their request left in the server's slot (caching/llama_slot.py).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0006_session_soft_delete_and_activity"),
    ]

    operations = [
        migrations.AddField(
            model_name="turn",
            name="llama_prefix",
            field=models.JSONField(blank=True, null=True),
        ),
    ]

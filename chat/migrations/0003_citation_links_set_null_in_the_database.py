"""A citation's links to its chunk and document are nulled by the database itself when those rows go, not only by
Django's collector: an answer stored while its sources are deleted or re-indexed (its citation inserted after the
collector looked) can then never make the delete fail at commit."""

from django.db import migrations

LINKS = (("chunk_id", "knowledge_chunk"), ("document_id", "knowledge_document"))


def _constraint(cursor, column: str) -> str | None:
    cursor.execute(
        """
        SELECT con.conname FROM pg_constraint con
        JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = ANY (con.conkey)
        WHERE con.conrelid = 'chat_citation'::regclass AND con.contype = 'f' AND att.attname = %s
        """,
        [column],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def set_null(apps, schema_editor, *, action: str = "SET NULL") -> None:
    with schema_editor.connection.cursor() as cursor:
        for column, table in LINKS:
            name = _constraint(cursor, column) or f"chat_citation_{column}_fk"
            cursor.execute(f'ALTER TABLE chat_citation DROP CONSTRAINT IF EXISTS "{name}"')
            cursor.execute(
                f'ALTER TABLE chat_citation ADD CONSTRAINT "{name}" FOREIGN KEY ("{column}") '
                f'REFERENCES "{table}" ("id") ON DELETE {action} DEFERRABLE INITIALLY DEFERRED'
            )


def no_action(apps, schema_editor) -> None:
    set_null(apps, schema_editor, action="NO ACTION")


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_alter_conversation_title"), ("knowledge", "0005_collection_example_questions")]

    operations = [migrations.RunPython(set_null, no_action)]

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("loans", "0001_initial"),
        ("monitoring", "0005_escalation_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="GuaranteeNetworkMember",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("as_of", models.DateField(verbose_name="as of")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("circle", "Guarantee circle"),
                            ("chain", "Guarantee chain with a non-performing member"),
                        ],
                        max_length=10,
                        verbose_name="kind",
                    ),
                ),
                (
                    "circle_id",
                    models.BigIntegerField(
                        blank=True,
                        help_text="Smallest borrower id of the circle; empty for a chain.",
                        null=True,
                        verbose_name="circle",
                    ),
                ),
                (
                    "member_count",
                    models.PositiveIntegerField(
                        blank=True, null=True, verbose_name="borrowers in the circle"
                    ),
                ),
                (
                    "chain_length",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Borrowers on the longest chain found through this borrower.",
                        null=True,
                        verbose_name="chain length",
                    ),
                ),
                (
                    "npl_member_count",
                    models.PositiveIntegerField(default=0, verbose_name="non-performing members"),
                ),
                (
                    "npl_members",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="Borrower ids, the smallest first, at most 20 of them.",
                        verbose_name="non-performing member ids",
                    ),
                ),
                (
                    "borrower",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="loans.borrower",
                        verbose_name="borrower",
                    ),
                ),
                (
                    "loan",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="loans.loan",
                        verbose_name="loan",
                    ),
                ),
            ],
            options={
                "verbose_name": "guarantee network member",
                "verbose_name_plural": "guarantee network members",
                "ordering": ["kind", "loan"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("loan", "kind"), name="network_member_unique_per_kind"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="FlaggedGuarantee",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "reason",
                    models.CharField(
                        choices=[
                            ("overdue", "Guarantor past due"),
                            ("non_performing", "Guarantor non-performing"),
                            ("over_extended", "Guarantor over-extended"),
                        ],
                        max_length=20,
                        verbose_name="reason",
                    ),
                ),
                ("as_of", models.DateField(verbose_name="as of")),
                (
                    "days_past_due",
                    models.PositiveIntegerField(
                        null=True, verbose_name="guarantor's days past due"
                    ),
                ),
                (
                    "risk_class",
                    models.PositiveSmallIntegerField(
                        choices=[
                            (1, "Normal"),
                            (2, "Special mention"),
                            (3, "Substandard"),
                            (4, "Doubtful"),
                            (5, "Loss"),
                        ],
                        null=True,
                        verbose_name="guarantor's risk class",
                    ),
                ),
                (
                    "total_guaranteed",
                    models.DecimalField(
                        decimal_places=2,
                        help_text="Amounts, or percentages of the outstanding principal, on open loans.",
                        max_digits=18,
                        verbose_name="guarantor's total guaranteed",
                    ),
                ),
                (
                    "net_worth",
                    models.DecimalField(
                        decimal_places=2,
                        max_digits=18,
                        null=True,
                        verbose_name="guarantor's net worth",
                    ),
                ),
                (
                    "flagged_guarantors",
                    models.PositiveIntegerField(
                        help_text="Guarantors of the loan flagged for this reason.",
                        verbose_name="guarantors flagged",
                    ),
                ),
                (
                    "guarantor",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="loans.guarantor",
                        verbose_name="guarantor",
                    ),
                ),
                (
                    "loan",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="loans.loan",
                        verbose_name="loan",
                    ),
                ),
            ],
            options={
                "verbose_name": "flagged guarantee",
                "verbose_name_plural": "flagged guarantees",
                "ordering": ["loan", "reason"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("loan", "reason"), name="flagged_guarantee_unique_per_reason"
                    )
                ],
            },
        ),
    ]

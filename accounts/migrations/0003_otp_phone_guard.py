from django.db import migrations, models


class Migration(migrations.Migration):
    """OTP phone locks become guards (security issue 12.3): past its daily budget of wrong codes a phone
    is no longer locked for everyone, its owner included; it is guarded (codes bound to the address that
    asked for them, one try each). Rows keep their window and count: a phone locked until now is
    guarded for the rest of its window."""

    dependencies = [
        ('accounts', '0002_phone_verified_token_version_deactivated_by'),
    ]

    operations = [
        migrations.RenameModel(old_name='OtpPhoneLock', new_name='OtpPhoneGuard'),
        migrations.AlterModelOptions(name='otpphoneguard', options={'verbose_name': 'OTP phone guard'}),
        migrations.RemoveField(model_name='otpphoneguard', name='locked_until'),
        migrations.AddField(
            model_name='otpphoneguard',
            name='guarded_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='otpphoneguard',
            name='failed_count',
            field=models.PositiveIntegerField(default=0, help_text='Wrong codes tried in this window.'),
        ),
        migrations.AddField(
            model_name='onetimepassword',
            name='bound_to_address',
            field=models.BooleanField(default=False),
        ),
    ]

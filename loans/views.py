"""Pages; filled in below."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def _placeholder(request, pk=None):
    return HttpResponse("")


loan_list = loan_detail = borrower_list = borrower_detail = _placeholder
jobrun_list = jobrun_detail = portfolio = _placeholder

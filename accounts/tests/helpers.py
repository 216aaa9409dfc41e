def code_from(message):
    """The digits of the code in an SMS body."""
    return next(word for word in message.body.replace(".", " ").split() if word.isdigit() and len(word) >= 4)

"""The questions the labeler asks: built-in prompts, user templates and their checks.

A prompt is a question about one image plus an answer-format instruction. The built-in
``"direct"`` prompt asks for the fine-grained category of the main object; ``"attributes"``
asks for the distinguishing visual attributes first and the name last (the attribute-seeking
idea of FineR), which makes the model look before it names. ``"expert"`` speaks to the
model as the expert of the images' category and asks for names at its granularity, all
three inferred from a few training images by one first question (FiNDR's naming prompt):
:func:`render_context_question` asks it, :func:`render_prompt` renders the answer into
the naming prompt. A user template is any string; its only placeholder is ``{domain}``.
:func:`render_choice_question` asks which of a few names an image shows, or none of them
(``MLLMLabeler.choose``).
"""

from __future__ import annotations

import string

__all__ = [
    "BUILTIN_PROMPTS",
    "CHOICE_QUESTION",
    "CONTEXT_FIELDS",
    "EXPERT_PROMPT",
    "check_template",
    "render_choice_question",
    "render_context_question",
    "render_prompt",
    "render_synonym_question",
]

_DIRECT = (
    "What is the fine-grained category of the {subject} in this image? Give the most "
    "specific name you can (for example the species, the make and model, or the variety), "
    "not a generic word."
)
_ATTRIBUTES = (
    "Look at the {subject} in this image. First list the visual attributes that tell its "
    "fine-grained category apart from similar ones (shape, colours, markings, parts). Then "
    "give the most specific name of its category (for example the species, the make and "
    "model, or the variety)."
)

#: The prompts selected by name through the ``prompt`` parameter, besides ``"expert"``.
BUILTIN_PROMPTS = {"direct": _DIRECT, "attributes": _ATTRIBUTES}
#: The prompt rendered from a naming context inferred in ``fit``.
EXPERT_PROMPT = "expert"
#: The fields of a naming context, as the context question asks for them.
CONTEXT_FIELDS = ("category", "granularity", "expert")

_CONTEXT_QUESTION = (
    "These images come from one collection of photos, each to be named by its fine-grained "
    "category. Say what kind of object the collection shows (for example bird, car, "
    "flower), the granularity at which an expert would name each one (for example species, "
    "make, model and year, variety) and which expert that is (for example an "
    "ornithologist)."
)
_CONTEXT_HINT = " The collection is expected to show {domain}; still say all three."
_FORMAT_CONTEXT = (
    'Answer with JSON only, in the form {"category": "<what the images show>", '
    '"granularity": "<the level of the names>", "expert": "<the expert, with an article>"}.'
)
_EXPERT = (
    "You are {expert}. These are images of {category}; name the {granularity} of the one in "
    "this image, as specifically as you can, not with a generic word."
)

#: The choice question: the lead (who asks about what), then the names, one a line.
CHOICE_QUESTION = (
    "{lead}\n{options}\n"
    'If none of them fits, answer "none of these". Answer with JSON only, in the form '
    '{{"name": "<one of the names, or none of these>"}}.'
)
_CHOICE_LEAD = "Which of these names is the fine-grained category of the {subject} in this image?"
_EXPERT_CHOICE_LEAD = (
    "You are {expert}. These are images of {category}; which of these names is the "
    "{granularity} of the one in this image?"
)

_SYNONYM_QUESTION = (
    "These are the names a model gave to {subject}, one per line:\n{names}\n"
    "Some may be different wordings of one kind: synonyms, spellings, abbreviations, "
    "word orders. Group the names that mean exactly the same kind. Names that differ in "
    "any detail (a shade, a pattern, a part, a model or year, a sex or age) are different "
    "kinds: never group those, and never group a general name with a more specific one. "
    'Answer with JSON only, in the form {{"groups": [["<name>", "<name>"], ...]}}, '
    "each group two or more names copied exactly from the list, each name in one group "
    'at most; {{"groups": []}} when no two names mean the same kind.'
)
_FORMAT_NAME = 'Answer with JSON only, in the form {"name": "<category name>"}.'
_FORMAT_ATTRIBUTES = (
    'Answer with JSON only, in the form {"attributes": ["<attribute>", ...], '
    '"name": "<category name>"}.'
)
_PLACEHOLDERS = frozenset({"domain"})


def check_template(template: str, domain: str | None) -> None:
    """Check a user prompt template; raise ``ValueError`` naming the ``prompt`` parameter.

    Parameters
    ----------
    template : str
        The template; ``{domain}`` is its only placeholder, ``{{`` and ``}}`` are
        literal braces.
    domain : str or None
        The ``domain`` parameter; a template that uses ``{domain}`` needs one.
    """
    if not template.strip():
        raise ValueError(
            "prompt must be 'direct', 'attributes', 'expert' or a non-empty template string, "
            "got ''."
        )
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ValueError(
            f"prompt is not a valid template ({error}); write literal braces as '{{{{' and "
            "'}}}}'."
        ) from None
    unknown = sorted({name for name in fields if name not in _PLACEHOLDERS})
    if unknown:
        shown = ", ".join("{" + name + "}" for name in unknown)
        raise ValueError(
            f"prompt uses unknown placeholder(s) {shown}; the only placeholder is {{domain}} "
            "(write literal braces as '{{' and '}}')."
        )
    if "domain" in fields and domain is None:
        raise ValueError("prompt uses {domain} but domain is None; pass domain='bird' or similar.")


def render_context_question(domain: str | None) -> str:
    """Return the question of ``prompt="expert"`` about a few training images at once.

    Parameters
    ----------
    domain : str or None
        What the images are expected to show; a hint, after which the model still
        answers every field of :data:`CONTEXT_FIELDS`.

    Returns
    -------
    str
    """
    hint = "" if domain is None else _CONTEXT_HINT.format(domain=domain)
    return f"{_CONTEXT_QUESTION}{hint} {_FORMAT_CONTEXT}"


def render_prompt(prompt: str, domain: str | None, context: dict | None = None) -> str:
    """Return the text sent with every image: the question and the answer format.

    Parameters
    ----------
    prompt : str
        ``"direct"``, ``"attributes"``, ``"expert"`` or a template checked by
        :func:`check_template`.
    domain : str or None
        What kind of object the images show (``"bird"``, ``"car model"``); built-in
        prompts mention it, templates use it through ``{domain}``.
    context : dict or None, default=None
        The naming context of ``"expert"``: a value for each of :data:`CONTEXT_FIELDS`.
        Without one, ``"expert"`` renders as ``"direct"`` (the context could not be had).

    Returns
    -------
    str

    Examples
    --------
    >>> context = {"category": "birds", "granularity": "species", "expert": "an ornithologist"}
    >>> render_prompt("expert", None, context)[:55]
    'You are an ornithologist. These are images of birds; na'
    """
    if prompt == EXPERT_PROMPT:
        if context is None:
            return render_prompt("direct", domain)
        return f"{_EXPERT.format(**context)} {_FORMAT_NAME}"
    if prompt in BUILTIN_PROMPTS:
        subject = "main object" if domain is None else f"{domain} (the main object)"
        question = BUILTIN_PROMPTS[prompt].format(subject=subject)
        answer_format = _FORMAT_ATTRIBUTES if prompt == "attributes" else _FORMAT_NAME
        return f"{question} {answer_format}"
    question = prompt.format(domain=domain)
    return f"{question}\n{_FORMAT_NAME}"


def render_choice_question(choices, domain: str | None = None, context: dict | None = None) -> str:
    """Return the question of a choice: which of ``choices`` the image shows, or none.

    Parameters
    ----------
    choices : sequence of str
        The names offered, listed in this order.
    domain : str or None, default=None
        What the images show (``"bird"``), as in the direct prompt.
    context : dict or None, default=None
        The naming context of ``prompt="expert"``: the question is then asked as its
        expert, at its granularity.

    Returns
    -------
    str

    Examples
    --------
    >>> question = render_choice_question(["blue jay", "steller's jay"], domain="bird")
    >>> question.splitlines()[1:3]
    ['- blue jay', "- steller's jay"]
    """
    if context is not None:
        lead = _EXPERT_CHOICE_LEAD.format(**context)
    else:
        subject = "main object" if domain is None else f"{domain} (the main object)"
        lead = _CHOICE_LEAD.format(subject=subject)
    options = "\n".join(f"- {choice}" for choice in choices)
    return CHOICE_QUESTION.format(lead=lead, options=options)


def render_synonym_question(names, domain: str | None = None, context: dict | None = None) -> str:
    """Return the question that asks which of ``names`` are wordings of one kind.

    Parameters
    ----------
    names : sequence of str
        The distinct names, listed in this order.
    domain : str or None, default=None
        What the images show (``"bird"``).
    context : dict or None, default=None
        The naming context of ``prompt="expert"``: its category and granularity say
        what the names are.

    Returns
    -------
    str

    Examples
    --------
    >>> question = render_synonym_question(["blue jay", "jay, blue"], domain="birds")
    >>> question.splitlines()[0]
    'These are the names a model gave to images of birds, one per line:'
    >>> question.splitlines()[1:3]
    ['- blue jay', '- jay, blue']
    """
    if context is not None:
        subject = f"images of {context['category']}, named by {context['granularity']}"
    else:
        subject = "images" if domain is None else f"images of {domain}"
    listed = "\n".join(f"- {name}" for name in names)
    return _SYNONYM_QUESTION.format(subject=subject, names=listed)

"""Enterprise master patient index: the matching core (features, blocking, scoring).

Pure functions over Patient dicts; the FHIR operations ($match, link, merge, review) sit on top.
"""

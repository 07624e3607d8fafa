"""The CDS Hooks service: EHRs call it while a clinician opens a chart; it answers with cards.

``medml serve`` runs :func:`medml.service.app.create_app` under uvicorn. Importing this package imports nothing
heavy: FastAPI, uvicorn and the models load when the app is built.
"""

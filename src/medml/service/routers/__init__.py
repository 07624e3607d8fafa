"""The service's routers, one per area: CDS Hooks (:mod:`.hooks`), image services (:mod:`.images`), web pages
(:mod:`.pages`). Each is a FastAPI ``APIRouter`` over :mod:`medml.service.core`; none imports another."""

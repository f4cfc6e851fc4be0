"""InvGC where the vectors already live: vector databases (optional extras, imported on use).

Each engine gets the two routes of the faiss indexes:

* **bake**: rows corrected as they are inserted into a table of the engine, the fitted correction
  kept beside it so a reopened store corrects later rows the same way (what
  :class:`invgc_faiss.InvGCIndex` does for a faiss index);
* **no rebuild**: a table that already holds raw vectors searched with the query-side correction
  (:mod:`invgc_faiss.query_side`), optionally rescoring the top candidates exactly from the
  stored vectors (what :class:`invgc_faiss.InvGCRerankIndex` does for a faiss index).

``invgc_faiss.stores.pgvector``: PostgreSQL with pgvector (extra ``pgvector``);
``invgc_faiss.stores.qdrant``: Qdrant, server or local mode (extra ``qdrant``);
``invgc_faiss.stores.lancedb``: LanceDB (extra ``lancedb``). What they share is in
``invgc_faiss.stores.common``. The core package imports none of these modules.
"""

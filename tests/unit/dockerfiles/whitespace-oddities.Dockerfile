  FROM   alpine  
		RUN	echo	tabs
   
	# tab comment
CMD    echo   spaced    

RUN echo ff
